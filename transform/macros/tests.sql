{# Keys here are composite (division + Exact's ID): one row per combination, and no part NULL
   except the columns listed in `nullable` (a NULL there is a value of its own). #}
{% test unique_key(model, columns, nullable=[]) %}
select {{ columns | join(', ') }}, count(*) as rows_with_this_key
from {{ model }}
group by {{ columns | join(', ') }}
having count(*) > 1
{%- for c in columns if c not in nullable %} or {{ c }} is null{% endfor %}
{% endtest %}
