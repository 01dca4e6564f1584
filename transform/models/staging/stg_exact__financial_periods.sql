select
    "Division"::integer as division,
    "ID" as financial_period_id,
    "FinYear"::integer as financial_year,
    "FinPeriod"::integer as financial_period,
    {{ exact_date('"StartDate"') }} as start_date,
    {{ exact_date('"EndDate"') }} as end_date
from {{ exact_live('financial_periods', ['"Division"', '"ID"']) }} as periods
