-- What a carrier needs on an order (issue 14): where to pick and deliver (name, address,
-- coordinates, contact), how to handle the goods (handling class, weight and volume per unit).
-- All nullable: a registry written before these fields loads as before, and an order then says
-- "not stated" (null) rather than a made-up value.
ALTER TABLE materials ADD COLUMN handling text
    CHECK (handling IN ('ambient', 'chilled', 'frozen', 'fragile', 'flammable', 'corrosive'));
ALTER TABLE materials ADD COLUMN weight_kg_per_unit double precision CHECK (weight_kg_per_unit > 0);
ALTER TABLE materials ADD COLUMN volume_m3_per_unit double precision CHECK (volume_m3_per_unit > 0);

ALTER TABLE sites ADD COLUMN address text;
ALTER TABLE sites ADD COLUMN contact_name text;
ALTER TABLE sites ADD COLUMN contact_phone text;
ALTER TABLE sites ADD COLUMN contact_email text;

-- The order's carrier details as published (dispatch order contract v2: both ends, windows,
-- accept-by, material handling), stored with the order so a republished order is identical.
-- NULL for orders stored before this migration (they are republished as v1).
ALTER TABLE dispatch_orders ADD COLUMN carrier_details jsonb;
