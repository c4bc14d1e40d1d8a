/**
 * Bounded growth and honest positions: where retention has deleted up to, and the author rule the
 * API applies (never blank) held for plain SQL writers too.
 */
import { SqlClient } from "@effect/sql"
import { Effect } from "effect"

export default Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  // One row at most: every message at or before (txid, id) has been deleted by retention, and
  // every later one is kept (deletion takes a prefix of the delivery order). A client resuming from
  // before it is told that messages are missing.
  yield* sql`
    CREATE TABLE message_retention (
      singleton boolean PRIMARY KEY DEFAULT true CONSTRAINT message_retention_one_row CHECK (singleton),
      txid xid8 NOT NULL,
      id bigint NOT NULL
    )
  `
  // NOT VALID: rows stored before this rule are left as they are; new ones must follow it.
  yield* sql`
    ALTER TABLE messages ADD CONSTRAINT messages_author_not_blank CHECK (author ~ '[^[:space:]]') NOT VALID
  `
})
