-- Every entry balances: per division and entry, the lines' AmountDC add up to 0.
select division, entry_id, sum(amount_dc) as imbalance
from {{ ref('stg_exact__transaction_lines') }}
group by division, entry_id
having sum(amount_dc) <> 0
