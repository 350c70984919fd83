-- hooklake: the partition's watermark and its topition id, once per produced batch; the
-- batch's records are then inserted, and the watermark updated, by that id
-- (record_insert_topition.sql, watermark_update_topition.sql) instead of joining
-- cluster, topic and topition again for each record and for the update.

select w.low, w.high, tp.id

from

cluster c
join topic t on t.cluster = c.id
join topition tp on tp.topic = t.id
join watermark w on w.topition = tp.id

where c.name = $1
and t.name = $2
and tp.partition = $3;
