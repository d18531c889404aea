-- The smallest and largest order (Σ lines) of each order_metrics window: the guide's
-- min_transaction / max_transaction of a period. Both merge exactly across batches (least,
-- greatest); windows written before this migration have none.
ALTER TABLE public.order_metrics ADD COLUMN IF NOT EXISTS min_order_value numeric(14, 2);
ALTER TABLE public.order_metrics ADD COLUMN IF NOT EXISTS max_order_value numeric(14, 2);
