-- Who reported an order status, when it came through the API (carrier:<id>); NULL for records
-- logistics systems published to the order-status topic themselves.
ALTER TABLE order_status_events ADD COLUMN actor text;
