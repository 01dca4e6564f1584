-- One row per live transaction line. `is_opening` marks the lines of opening entries
-- (Type 10): they carry the balance accounts into the year and are not the year's movement.
select
    "Division"::integer as division,
    "ID" as transaction_line_id,
    "EntryID" as entry_id,
    "EntryNumber"::integer as entry_number,
    "LineNumber"::integer as line_number,
    "Type"::integer as entry_type,
    "Type" = 10 as is_opening,
    "Status"::integer as status,
    {{ exact_text('"JournalCode"') }} as journal_code,
    {{ exact_text('"JournalDescription"') }} as journal_description,
    {{ exact_date('"Date"') }} as entry_date,
    {{ exact_date('"DueDate"') }} as due_date,
    "FinancialYear"::integer as financial_year,
    "FinancialPeriod"::integer as financial_period,
    "GLAccount" as gl_account_id,
    {{ exact_text('"GLAccountCode"') }} as gl_account_code,
    "Account" as account_id,
    {{ exact_text('"AccountCode"') }} as account_code,
    {{ exact_text('"AccountName"') }} as account_name,
    "InvoiceNumber"::integer as invoice_number,
    {{ exact_text('"Description"') }} as description,
    {{ exact_amount('"AmountDC"') }} as amount_dc,
    {{ exact_amount('"AmountFC"') }} as amount_fc,
    {{ exact_text('"Currency"') }} as currency,
    {{ exact_text('"VATCode"') }} as vat_code
from {{ exact_live('transaction_lines', ['"Division"', '"ID"']) }} as lines
