{#
  Helpers for Exact's quirks, used by every staging model.
#}

{# The live version of each row of a loaded table: the latest row per key, and only when it
   is not a tombstone. target-postgres upserts by key, so normally there is one row per key
   and the tombstone is that row with _sdc_deleted_at set (its other columns NULL); with an
   append-only load the latest row decides. #}
{% macro exact_live(table, key) -%}
    (
        select *
        from (
            select distinct on ({{ key | join(', ') }}) *
            from {{ source('exactonline', table) }}
            order by {{ key | join(', ') }}, _sdc_batched_at desc nulls last, _sdc_sequence desc nulls last
        ) as latest
        where _sdc_deleted_at is null
    )
{%- endmacro %}

{# A calendar date as Exact shows it. Exact writes dates at local midnight; the tap emits a
   moment in UTC (2024-01-01 shows as 2023-12-31T23:00Z) or, for date fields, the date itself.
   Both become the local calendar date. #}
{% macro exact_date(column) -%}
    ((({{ column }})::timestamp at time zone 'UTC') at time zone '{{ var("exact_timezone") }}')::date
{%- endmacro %}

{# Exact pads fixed-width codes (account codes right-aligned to 18 characters, "NL "). #}
{% macro exact_text(column) -%}
    nullif(trim({{ column }}), '')
{%- endmacro %}

{# Money: numeric, so sums are exact (Exact amounts are decimal, never binary floats). #}
{% macro exact_amount(column) -%}
    ({{ column }})::numeric
{%- endmacro %}

{# Receivables (cashflow/Receivables) and payables (cashflow/Payments) share their shape. Exact's
   cashflow status: 20 open, 30 selected for a receipt or payment, 40 processed, 50 matched;
   an item is still open while 20 or 30 (and, for receivables, not IsFullyPaid). AmountDC is
   the amount still due, positive on both sides as Exact's screens show it. #}
{% macro stg_open_items(table, side) -%}
select
    "Division"::integer as division,
    "ID" as {{ side }}_id,
    '{{ side }}'::text as side,
    "Account" as account_id,
    {{ exact_text('"AccountCode"') }} as account_code,
    {{ exact_text('"AccountName"') }} as account_name,
    "InvoiceNumber"::integer as invoice_number,
    {{ exact_date('"InvoiceDate"') }} as invoice_date,
    {{ exact_date('"DueDate"') }} as due_date,
    "EntryID" as entry_id,
    "GLAccount" as gl_account_id,
    {{ exact_text('"Currency"') }} as currency,
    {{ exact_amount('"AmountDC"') }} as amount_dc,
    {{ exact_amount('"TransactionAmountDC"') }} as invoice_amount_dc,
    "Status"::integer as status,
    "Status" in (20, 30) {% if side == 'receivable' %}and not coalesce("IsFullyPaid", false){% endif %} as is_open
from {{ exact_live(table, ['"Division"', '"ID"']) }} as items
{%- endmacro %}
