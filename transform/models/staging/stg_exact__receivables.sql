{{ stg_open_items('receivables', 'receivable') }}
