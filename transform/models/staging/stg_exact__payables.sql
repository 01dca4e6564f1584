{{ stg_open_items('payments', 'payable') }}
