-- hooklake: produce, fetch and ListOffsets find a partition's watermark by its topition; without
-- this index each of those queries read the watermark row of every partition of every
-- topic.

create index if not exists watermark_topition on watermark (topition);
