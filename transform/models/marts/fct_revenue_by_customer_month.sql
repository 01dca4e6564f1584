-- Revenue (turnover accounts only: Exact type 110 or RGS WOmz) per customer and calendar month.
select
    division,
    division_currency,
    date_trunc('month', entry_date)::date as month,
    account_id,
    account_code,
    coalesce(account_name, '(no customer)') as account_name,
    -sum(amount_dc) as revenue,
    count(distinct entry_id) as entries
from {{ ref('fct_general_ledger') }}
where is_revenue and not is_opening
group by 1, 2, 3, 4, 5, 6
