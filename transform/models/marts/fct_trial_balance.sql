-- Per division, financial year, period and GL account: opening balance, movement (debit and
-- credit) and closing balance, in the division's currency (debit positive).
-- A year starts from its opening entry (Exact's year closing books one, Type 10, carrying the
-- balance accounts and last year's result forward); profit-and-loss accounts start at 0.
-- The opening of a period is the closing of the one before.
with periods as (
    select division, financial_year, financial_period from {{ ref('stg_exact__financial_periods') }}
    union
    select division, financial_year, financial_period from {{ ref('fct_general_ledger') }}
    where financial_period >= 1
),

per_period as (
    select
        division, financial_year, gl_account_id,
        greatest(financial_period, 1) as financial_period,
        sum(amount_dc) filter (where is_opening) as opening_entry,
        sum(amount_dc) filter (where not is_opening) as movement,
        sum(amount_dc) filter (where not is_opening and amount_dc > 0) as movement_debit,
        -sum(amount_dc) filter (where not is_opening and amount_dc < 0) as movement_credit
    from {{ ref('fct_general_ledger') }}
    group by 1, 2, 3, 4
),

account_years as (
    select division, financial_year, gl_account_id, coalesce(sum(opening_entry), 0) as opening_entry
    from per_period
    group by 1, 2, 3
),

grid as (
    select
        ay.division, ay.financial_year, p.financial_period, ay.gl_account_id, ay.opening_entry,
        coalesce(m.movement, 0) as movement,
        coalesce(m.movement_debit, 0) as movement_debit,
        coalesce(m.movement_credit, 0) as movement_credit
    from account_years as ay
    join periods as p on p.division = ay.division and p.financial_year = ay.financial_year
    left join per_period as m
        on m.division = ay.division and m.financial_year = ay.financial_year
        and m.gl_account_id = ay.gl_account_id and m.financial_period = p.financial_period
),

balances as (
    select
        *,
        opening_entry + coalesce(sum(movement) over (
            partition by division, financial_year, gl_account_id order by financial_period
            rows between unbounded preceding and 1 preceding), 0) as opening_balance
    from grid
)

select
    b.division,
    d.currency as division_currency,
    b.financial_year,
    b.financial_period,
    b.gl_account_id,
    g.gl_account_code,
    g.gl_account_description,
    g.balance_type,
    g.section,
    g.classification_code,
    g.classification_description,
    b.opening_balance,
    b.movement_debit,
    b.movement_credit,
    b.movement,
    b.opening_balance + b.movement as closing_balance
from balances as b
left join {{ ref('dim_gl_accounts') }} as g on g.division = b.division and g.gl_account_id = b.gl_account_id
left join {{ ref('stg_exact__divisions') }} as d on d.division = b.division
