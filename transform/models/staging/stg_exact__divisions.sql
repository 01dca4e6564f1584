-- The tap reads system/Divisions once per division, so every division lists all the others:
-- one row per division code, preferring the row the division itself reported.
select distinct on ("Code")
    "Code"::integer as division,
    {{ exact_text('"Description"') }} as division_name,
    {{ exact_text('"Currency"') }} as currency,
    {{ exact_text('"Country"') }} as country,
    {{ exact_text('"Legislation"') }} as legislation,
    {{ exact_date('"StartDate"') }} as start_date
from {{ source('exactonline', 'divisions') }}
where _sdc_deleted_at is null
order by "Code", ("Division" = "Code") desc, _sdc_batched_at desc nulls last
