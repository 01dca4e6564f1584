-- Customers and suppliers (Exact's CRM accounts); Code is right-aligned to 18 characters at Exact.
select
    "Division"::integer as division,
    "ID" as account_id,
    {{ exact_text('"Code"') }} as account_code,
    {{ exact_text('"Name"') }} as account_name,
    {{ exact_text('"City"') }} as city,
    {{ exact_text('"Country"') }} as country,
    {{ exact_text('"Status"') }} as status,
    coalesce("IsSales", false) as is_customer,
    coalesce("IsSupplier", false) as is_supplier
from {{ exact_live('accounts', ['"Division"', '"ID"']) }} as accounts
