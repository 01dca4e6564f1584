-- The balance sheet balances at the end of every period: assets = liabilities + equity + the
-- year's result so far.
select division, financial_year, financial_period,
    sum(amount) filter (where section = 'assets') as assets,
    sum(amount) filter (where section <> 'assets') as liabilities_equity_and_result
from {{ ref('fct_balance_sheet') }}
group by division, financial_year, financial_period
having coalesce(sum(amount) filter (where section = 'assets'), 0)
    <> coalesce(sum(amount) filter (where section <> 'assets'), 0)
