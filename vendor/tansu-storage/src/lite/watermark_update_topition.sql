-- hooklake: watermark_update.sql by the partition's topition id
-- (watermark_select_topition.sql).

update watermark
set
low = $2,
high = $3,
last_updated = current_timestamp
where topition = $1;
