/**
 * A wake-up for pollers: each INSERT statement on messages sends one notification, which
 * PostgreSQL delivers to every listening node when (and only if) its transaction commits, and
 * only once that transaction has ended, so a poll started on receipt can already read its rows.
 * The payload is empty: the poll reads the rows, so nothing depends on what a notification says.
 */
import { SqlClient } from "@effect/sql"
import { Effect } from "effect"

/** The channel the trigger notifies; Wakeups listens on it. */
export const wakeupChannel = "pollcast_messages_inserted"

export default Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  yield* sql`
    CREATE FUNCTION messages_notify_wakeup() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      PERFORM pg_notify(${sql.literal(`'${wakeupChannel}'`)}, '');
      RETURN NULL;
    END
    $$`
  // Per statement, not per row: a multi-row INSERT (the group commit's) wakes each node once, and
  // PostgreSQL folds identical notifications of one transaction into one.
  yield* sql`
    CREATE TRIGGER messages_notify_wakeup
    AFTER INSERT ON messages
    FOR EACH STATEMENT EXECUTE FUNCTION messages_notify_wakeup()`
})
