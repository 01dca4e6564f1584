-- The trial balance closes to 0 in every division, year and period: opening, movement and closing.
select division, financial_year, financial_period,
    sum(opening_balance) as opening, sum(movement) as movement, sum(closing_balance) as closing
from {{ ref('fct_trial_balance') }}
group by division, financial_year, financial_period
having sum(opening_balance) <> 0 or sum(movement) <> 0 or sum(closing_balance) <> 0
