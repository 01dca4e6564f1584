select
    "Division"::integer as division,
    "ID" as journal_id,
    {{ exact_text('"Code"') }} as journal_code,
    {{ exact_text('"Description"') }} as journal_description,
    "Type"::integer as journal_type,
    "GLAccount" as gl_account_id,
    {{ exact_text('"Currency"') }} as currency,
    coalesce("IsBlocked", false) as is_blocked
from {{ exact_live('journals', ['"Division"', '"ID"']) }} as journals
