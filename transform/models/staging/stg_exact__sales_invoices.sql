select
    "Division"::integer as division,
    "InvoiceID" as invoice_id,
    "InvoiceNumber"::integer as invoice_number,
    {{ exact_date('"InvoiceDate"') }} as invoice_date,
    {{ exact_date('"DueDate"') }} as due_date,
    "InvoiceTo" as account_id,
    {{ exact_text('"InvoiceToName"') }} as account_name,
    {{ exact_text('"Journal"') }} as journal_code,
    {{ exact_text('"Currency"') }} as currency,
    {{ exact_amount('"AmountFCExclVat"') }} as amount_fc_excl_vat,
    {{ exact_amount('"VATAmountFC"') }} as vat_amount_fc,
    {{ exact_amount('"AmountDC"') }} as amount_dc,
    "Status"::integer as status,
    {{ exact_text('"Description"') }} as description
from {{ exact_live('sales_invoices', ['"Division"', '"InvoiceID"']) }} as invoices
