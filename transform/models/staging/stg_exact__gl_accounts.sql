-- BalanceType B (balance sheet) or W (profit and loss, "winst en verlies"); BalanceSide is
-- the account's normal side, D(ebit) or C(redit).
select
    "Division"::integer as division,
    "ID" as gl_account_id,
    {{ exact_text('"Code"') }} as gl_account_code,
    {{ exact_text('"Description"') }} as gl_account_description,
    "Type"::integer as gl_account_type,
    {{ exact_text('"TypeDescription"') }} as gl_account_type_description,
    upper({{ exact_text('"BalanceType"') }}) as balance_type,
    upper({{ exact_text('"BalanceSide"') }}) as balance_side,
    coalesce("IsBlocked", false) as is_blocked
from {{ exact_live('gl_accounts', ['"Division"', '"ID"']) }} as accounts
