-- How many delegations each issuer has kept, kept current by triggers, so a commit checks the cap
-- per issuer with one lookup instead of counting the issuer's rows (up to the cap) for every
-- delegation of every invocation's chain.
CREATE TABLE proof_counts (
    issuer TEXT    NOT NULL PRIMARY KEY,
    n      INTEGER NOT NULL
) STRICT, WITHOUT ROWID;

INSERT INTO proof_counts (issuer, n) SELECT issuer, count(*) FROM proofs GROUP BY issuer;

CREATE TRIGGER proofs_counted AFTER INSERT ON proofs BEGIN
    INSERT INTO proof_counts (issuer, n) VALUES (NEW.issuer, 1)
        ON CONFLICT (issuer) DO UPDATE SET n = n + 1;
END;

-- An issuer with nothing kept has no row, so the table holds no more rows than `proofs` does.
CREATE TRIGGER proofs_uncounted AFTER DELETE ON proofs BEGIN
    UPDATE proof_counts SET n = n - 1 WHERE issuer = OLD.issuer;
    DELETE FROM proof_counts WHERE issuer = OLD.issuer AND n <= 0;
END;
