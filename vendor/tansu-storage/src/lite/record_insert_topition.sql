-- hooklake: record_insert.sql by the partition's topition id (watermark_select_topition.sql).

insert into record
(topition, offset_id, attributes, producer_id, producer_epoch, timestamp, k, v)
values ($1, $2, $3, $4, $5, $6, $7, $8);
