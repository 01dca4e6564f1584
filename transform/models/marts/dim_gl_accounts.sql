-- Every GL account with what the statements group it by:
-- * classification: its classification in the reporting scheme (var reporting_scheme, RGS by
--   default; another scheme when that is all it has); unmapped accounts fall back to their
--   Exact account type, so nothing drops out of the statements;
-- * section: assets, liabilities, equity (balance sheet, BalanceType B) or income, expenses
--   (profit and loss, BalanceType W). The classification's side decides when mapped (RGS
--   BEiv is equity), else the account's own type and normal side (BalanceSide).
with mapped as (
    select distinct on (m.division, m.gl_account_id)
        m.division,
        m.gl_account_id,
        m.classification_id,
        coalesce(c.classification_code, m.classification_code) as classification_code,
        coalesce(c.classification_description, m.classification_description) as classification_description,
        c.balance_side as classification_side,
        m.gl_scheme_code
    from {{ ref('stg_exact__gl_account_classification_mappings') }} as m
    left join {{ ref('stg_exact__gl_classifications') }} as c
        on c.division = m.division and c.classification_id = m.classification_id
    order by m.division, m.gl_account_id,
        (upper(m.gl_scheme_code) = upper('{{ var("reporting_scheme") }}')) desc nulls last, m.gl_scheme_code
)

select
    a.division,
    a.gl_account_id,
    a.gl_account_code,
    a.gl_account_description,
    a.gl_account_type,
    a.gl_account_type_description,
    a.balance_type,
    a.balance_side,
    mapped.gl_scheme_code,
    mapped.classification_id,
    coalesce(mapped.classification_code, 'type ' || a.gl_account_type, 'unclassified') as classification_code,
    coalesce(mapped.classification_description, a.gl_account_type_description, 'Unclassified')
        as classification_description,
    case
        when a.balance_type = 'W' then
            case when coalesce(mapped.classification_side, a.balance_side) = 'C' then 'income' else 'expenses' end
        -- Exact account types 50 (capital stock) and 52 (retained earnings) are equity.
        when mapped.classification_code like 'BEiv%' or a.gl_account_type in (50, 52) then 'equity'
        when coalesce(mapped.classification_side, a.balance_side) = 'C' then 'liabilities'
        else 'assets'
    end as section,
    -- Exact account type 110 is revenue (turnover), as opposed to other income such as interest.
    a.gl_account_type = 110 or coalesce(mapped.classification_code like 'WOmz%', false) as is_revenue
from {{ ref('stg_exact__gl_accounts') }} as a
left join mapped on mapped.division = a.division and mapped.gl_account_id = a.gl_account_id
