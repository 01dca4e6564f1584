-- The balance sheet at the end of each period, by section and classification, as a report
-- shows it: assets debit positive, liabilities and equity credit positive. The year's result
-- so far (profit positive) is its own line, so: assets = liabilities + equity + result.
select
    division, division_currency, financial_year, financial_period, section,
    classification_code, classification_description,
    sum(case when section = 'assets' then closing_balance else -closing_balance end) as amount
from {{ ref('fct_trial_balance') }}
where balance_type = 'B'
group by 1, 2, 3, 4, 5, 6, 7

union all

select
    division, division_currency, financial_year, financial_period, 'result', null, 'Result for the year',
    -sum(closing_balance)
from {{ ref('fct_trial_balance') }}
where balance_type = 'W'
group by 1, 2, 3, 4
