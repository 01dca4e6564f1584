-- Profit and loss per period by section and classification: income positive, expenses
-- negative, so the result is the sum. `amount` is the period's, `amount_ytd` the year's so far.
select
    division, division_currency, financial_year, financial_period, section,
    classification_code, classification_description,
    -sum(movement) as amount,
    -sum(closing_balance) as amount_ytd
from {{ ref('fct_trial_balance') }}
where balance_type = 'W'
group by 1, 2, 3, 4, 5, 6, 7
