{# <target schema>_staging and <target schema>_marts (dbt's default naming), spelled out so
   the layout is visible here: one schema per layer, next to the loaded `exactonline` schema. #}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {%- if custom_schema_name is none -%}{{ target.schema }}
    {%- else -%}{{ target.schema }}_{{ custom_schema_name | trim }}{%- endif -%}
{%- endmacro %}
