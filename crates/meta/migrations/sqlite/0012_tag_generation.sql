-- A repository's tag generation: bumped in the same transaction as any change to the set of its
-- tag names, so a cached page of tag names is known to be current by reading one row
-- (crates/meta/src/sqlite/cache.rs, `Versioned`). Moving a tag to another digest does not change
-- the names and does not bump it. Repositories are never deleted, so (id, tag_gen) never repeats.
ALTER TABLE repositories ADD COLUMN tag_gen INTEGER NOT NULL DEFAULT 0;

CREATE TRIGGER tags_gen_insert AFTER INSERT ON tags BEGIN
    UPDATE repositories SET tag_gen = tag_gen + 1 WHERE id = NEW.repo_id;
END;

CREATE TRIGGER tags_gen_rename AFTER UPDATE OF repo_id, name ON tags BEGIN
    UPDATE repositories SET tag_gen = tag_gen + 1 WHERE id IN (OLD.repo_id, NEW.repo_id);
END;

CREATE TRIGGER tags_gen_delete AFTER DELETE ON tags BEGIN
    UPDATE repositories SET tag_gen = tag_gen + 1 WHERE id = OLD.repo_id;
END;
