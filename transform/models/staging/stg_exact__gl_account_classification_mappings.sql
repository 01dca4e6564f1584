-- Which classification of which reporting scheme (GLSchemeCode, e.g. RGS) a GL account maps to.
select
    "Division"::integer as division,
    "ID" as mapping_id,
    "GLAccount" as gl_account_id,
    "Classification" as classification_id,
    {{ exact_text('"ClassificationCode"') }} as classification_code,
    {{ exact_text('"ClassificationDescription"') }} as classification_description,
    "GLSchemeID" as gl_scheme_id,
    {{ exact_text('"GLSchemeCode"') }} as gl_scheme_code,
    {{ exact_text('"GLSchemeDescription"') }} as gl_scheme_description
from {{ exact_live('gl_account_classification_mappings', ['"Division"', '"ID"']) }} as mappings
