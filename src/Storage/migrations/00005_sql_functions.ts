/**
 * pollcast from SQL, inside other systems' own transactions:
 *
 * - `pollcast_publish(channel, body, author)` stores a message with the rules of `POST /messages`
 *   (the channel's format, a body of 1 to MAX_BODY_BYTES bytes, an author trimmed, not blank, at
 *   most 64 characters) and returns the id it will have once the transaction commits.
 * - `pollcast_position()` returns the position that matches the calling transaction's snapshot:
 *   `GET /events` from it delivers exactly the messages that snapshot does not see. It is the id of
 *   the newest message older than every transaction still running; where the snapshot saw no
 *   transaction younger than one still running, that is all, else it is followed by the snapshot
 *   (`@xmin:xmax:running,…`, as PostgreSQL writes snapshots), since messages of the transactions
 *   still running then sort among ones it saw (see Snapshot).
 *
 * `pollcast_settings` holds MAX_BODY_BYTES, written by each node as it starts.
 */
import { SqlClient } from "@effect/sql"
import { Effect } from "effect"
import { maxRunning } from "../../Domain/Snapshot.js"


export default Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  yield* sql`
    CREATE TABLE pollcast_settings (
      singleton boolean PRIMARY KEY DEFAULT true CONSTRAINT pollcast_settings_one_row CHECK (singleton),
      max_body_bytes integer NOT NULL
    )
  `
  yield* sql.unsafe(`
    CREATE FUNCTION pollcast_publish(channel text, body text, author text DEFAULT 'anonymous')
    RETURNS text LANGUAGE plpgsql AS $fn$
    #variable_conflict use_variable
    DECLARE
      max_bytes integer := coalesce((SELECT max_body_bytes FROM pollcast_settings), 16384);
      name text := regexp_replace(coalesce(author, 'anonymous'), '^[[:space:]]+|[[:space:]]+$', '', 'g');
      stored record;
    BEGIN
      IF channel IS NULL OR channel !~ '^[A-Za-z0-9_.:-]{1,64}$' THEN
        RAISE EXCEPTION 'pollcast_publish: channel must be 1 to 64 characters of A-Z, a-z, 0-9, ''_'', ''.'', '':'' or ''-'' (got %)',
          left(quote_nullable(channel), 80) USING ERRCODE = 'invalid_parameter_value';
      END IF;
      IF body IS NULL OR body = '' THEN
        RAISE EXCEPTION 'pollcast_publish: body must not be empty' USING ERRCODE = 'invalid_parameter_value';
      END IF;
      IF octet_length(body) > max_bytes THEN
        RAISE EXCEPTION 'pollcast_publish: body must be at most % bytes of UTF-8 (MAX_BODY_BYTES); it has %',
          max_bytes, octet_length(body) USING ERRCODE = 'invalid_parameter_value';
      END IF;
      IF name = '' THEN
        RAISE EXCEPTION 'pollcast_publish: author must not be blank (leave it out to publish as "anonymous")'
          USING ERRCODE = 'invalid_parameter_value';
      END IF;
      IF char_length(name) > 64 THEN
        RAISE EXCEPTION 'pollcast_publish: author must be at most 64 characters' USING ERRCODE = 'invalid_parameter_value';
      END IF;
      INSERT INTO messages (channel, author, body) VALUES (channel, name, body) RETURNING messages.txid, messages.id INTO stored;
      RETURN lpad(to_hex(stored.txid::text::bigint), 16, '0') || '-' || lpad(to_hex(stored.id), 16, '0');
    END
    $fn$`)
  yield* sql.unsafe(`
    CREATE FUNCTION pollcast_position() RETURNS text LANGUAGE plpgsql STABLE AS $fn$
    DECLARE
      snapshot pg_snapshot := pg_current_snapshot();
      oldest xid8 := pg_snapshot_xmin(snapshot);
      running text := (SELECT string_agg(x::text, ',' ORDER BY x::text::numeric) FROM pg_snapshot_xip(snapshot) AS x);
      -- The newest message of a transaction older than every one still running: it and all
      -- before it are seen by the snapshot, all after it are not, but for the snapshot's own
      -- (between xmin and xmax, not running).
      seen text := coalesce(
        (SELECT lpad(to_hex(messages.txid::text::bigint), 16, '0') || '-' || lpad(to_hex(messages.id), 16, '0')
         FROM messages WHERE messages.txid < oldest ORDER BY txid DESC, id DESC LIMIT 1),
        '0000000000000000-0000000000000000');
    BEGIN
      IF pg_snapshot_xmax(snapshot) = oldest THEN
        RETURN seen;
      END IF;
      IF (SELECT count(*) FROM pg_snapshot_xip(snapshot)) > ${maxRunning} THEN
        RAISE EXCEPTION 'pollcast_position: more than ${maxRunning} transactions were running when the snapshot was taken; try again'
          USING ERRCODE = 'program_limit_exceeded';
      END IF;
      RETURN seen || '@' || oldest::text || ':' || pg_snapshot_xmax(snapshot)::text || ':' || coalesce(running, '');
    END
    $fn$`)
})
