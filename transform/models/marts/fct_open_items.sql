-- Open receivables and payables (side) with their age at var as_of_date (default today):
-- days past the due date and a bucket, as an ageing report shows them.
with as_of as (
    select {% if var('as_of_date') %}'{{ var("as_of_date") }}'::date{% else %}current_date{% endif %} as as_of_date
),

items as (
    select division, side, receivable_id as open_item_id, account_id, account_code, account_name,
        invoice_number, invoice_date, due_date, currency, amount_dc, invoice_amount_dc, is_open
    from {{ ref('stg_exact__receivables') }}
    union all
    select division, side, payable_id, account_id, account_code, account_name,
        invoice_number, invoice_date, due_date, currency, amount_dc, invoice_amount_dc, is_open
    from {{ ref('stg_exact__payables') }}
)

select
    i.division,
    i.side,
    i.open_item_id,
    i.account_id,
    i.account_code,
    coalesce(a.account_name, i.account_name) as account_name,
    i.invoice_number,
    i.invoice_date,
    i.due_date,
    i.currency,
    i.amount_dc as open_amount_dc,
    i.invoice_amount_dc,
    as_of.as_of_date,
    greatest(as_of.as_of_date - coalesce(i.due_date, i.invoice_date, as_of.as_of_date), 0) as days_overdue,
    case
        when as_of.as_of_date <= coalesce(i.due_date, i.invoice_date, as_of.as_of_date) then 'not due'
        when as_of.as_of_date - coalesce(i.due_date, i.invoice_date) <= 30 then '1-30'
        when as_of.as_of_date - coalesce(i.due_date, i.invoice_date) <= 60 then '31-60'
        when as_of.as_of_date - coalesce(i.due_date, i.invoice_date) <= 90 then '61-90'
        else 'over 90'
    end as age_bucket
from items as i
cross join as_of
left join {{ ref('stg_exact__accounts') }} as a on a.division = i.division and a.account_id = i.account_id
where i.is_open
