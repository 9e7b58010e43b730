-- The log of changes to each repository's tag names, so a process that keeps a repository's names
-- in memory (crates/meta/src/sqlite/tag_names.rs) brings them up to date by reading the changes
-- since the generation it holds, instead of every name again.
--
-- Every bump of `tag_gen` now writes exactly one row here, in the same trigger and so in the same
-- transaction: the name added (`added` = 1) or removed (0) at that generation. A rename bumps the
-- old repository for the removal, then the new one for the addition (one generation each). So the
-- rows past generation g of a repository are complete exactly when there are `tag_gen - g` of
-- them. The triggers keep the last 1024 rows of each repository; a reader further behind than
-- that finds rows missing and reads every name again.
--
-- `tag_count` is the number of tags, kept by the same triggers, so a listing knows before reading
-- whether a repository is small enough to hold in memory.
CREATE TABLE tag_log (
    repo_id INTEGER NOT NULL REFERENCES repositories(id),
    gen     INTEGER NOT NULL,
    name    TEXT NOT NULL,
    added   INTEGER NOT NULL,
    PRIMARY KEY (repo_id, gen)
) WITHOUT ROWID;

ALTER TABLE repositories ADD COLUMN tag_count INTEGER NOT NULL DEFAULT 0;
UPDATE repositories SET tag_count = (SELECT count(*) FROM tags WHERE tags.repo_id = repositories.id);

DROP TRIGGER tags_gen_insert;
DROP TRIGGER tags_gen_rename;
DROP TRIGGER tags_gen_delete;

CREATE TRIGGER tags_gen_insert AFTER INSERT ON tags BEGIN
    UPDATE repositories SET tag_gen = tag_gen + 1, tag_count = tag_count + 1 WHERE id = NEW.repo_id;
    INSERT INTO tag_log (repo_id, gen, name, added)
        SELECT id, tag_gen, NEW.name, 1 FROM repositories WHERE id = NEW.repo_id;
    DELETE FROM tag_log WHERE repo_id = NEW.repo_id
        AND gen <= (SELECT tag_gen FROM repositories WHERE id = NEW.repo_id) - 1024;
END;

CREATE TRIGGER tags_gen_rename AFTER UPDATE OF repo_id, name ON tags BEGIN
    UPDATE repositories SET tag_gen = tag_gen + 1, tag_count = tag_count - 1 WHERE id = OLD.repo_id;
    INSERT INTO tag_log (repo_id, gen, name, added)
        SELECT id, tag_gen, OLD.name, 0 FROM repositories WHERE id = OLD.repo_id;
    UPDATE repositories SET tag_gen = tag_gen + 1, tag_count = tag_count + 1 WHERE id = NEW.repo_id;
    INSERT INTO tag_log (repo_id, gen, name, added)
        SELECT id, tag_gen, NEW.name, 1 FROM repositories WHERE id = NEW.repo_id;
    DELETE FROM tag_log WHERE repo_id IN (OLD.repo_id, NEW.repo_id)
        AND gen <= (SELECT tag_gen FROM repositories r WHERE r.id = tag_log.repo_id) - 1024;
END;

CREATE TRIGGER tags_gen_delete AFTER DELETE ON tags BEGIN
    UPDATE repositories SET tag_gen = tag_gen + 1, tag_count = tag_count - 1 WHERE id = OLD.repo_id;
    INSERT INTO tag_log (repo_id, gen, name, added)
        SELECT id, tag_gen, OLD.name, 0 FROM repositories WHERE id = OLD.repo_id;
    DELETE FROM tag_log WHERE repo_id = OLD.repo_id
        AND gen <= (SELECT tag_gen FROM repositories WHERE id = OLD.repo_id) - 1024;
END;
