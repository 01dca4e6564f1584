-- Exact's reporting-scheme elements (the Dutch RGS among them), a tree through parent_id.
select
    "Division"::integer as division,
    "ID" as classification_id,
    {{ exact_text('"Code"') }} as classification_code,
    {{ exact_text('"Name"') }} as classification_name,
    {{ exact_text('"Description"') }} as classification_description,
    "Parent" as parent_id,
    upper({{ exact_text('"Balance"') }}) as balance_side,
    coalesce("Abstract", false) as is_abstract,
    {{ exact_text('"PeriodType"') }} as period_type,
    {{ exact_text('"TaxonomyNamespaceDescription"') }} as taxonomy
from {{ exact_live('gl_classifications', ['"Division"', '"ID"']) }} as classifications
