-- A room's video layout (`speaker`, `grid`, `speaker-strip`): each conference in it starts so.
-- NULL: the gateway's [video] layout.
ALTER TABLE rooms ADD COLUMN layout TEXT;
