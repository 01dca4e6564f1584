-- One row per live transaction line, with its GL account, classification, section and period.
select
    l.division,
    d.currency as division_currency,
    l.transaction_line_id,
    l.entry_id,
    l.entry_number,
    l.line_number,
    l.entry_type,
    l.is_opening,
    l.journal_code,
    coalesce(j.journal_description, l.journal_description) as journal_description,
    l.entry_date,
    l.financial_year,
    l.financial_period,
    l.gl_account_id,
    coalesce(g.gl_account_code, l.gl_account_code) as gl_account_code,
    g.gl_account_description,
    g.balance_type,
    g.section,
    g.classification_code,
    g.classification_description,
    g.is_revenue,
    l.account_id,
    l.account_code,
    coalesce(a.account_name, l.account_name) as account_name,
    l.invoice_number,
    l.description,
    l.amount_dc,
    l.amount_fc,
    l.currency
from {{ ref('stg_exact__transaction_lines') }} as l
left join {{ ref('dim_gl_accounts') }} as g on g.division = l.division and g.gl_account_id = l.gl_account_id
left join {{ ref('stg_exact__journals') }} as j on j.division = l.division and j.journal_code = l.journal_code
left join {{ ref('stg_exact__accounts') }} as a on a.division = l.division and a.account_id = l.account_id
left join {{ ref('stg_exact__divisions') }} as d on d.division = l.division
