/**
 * The messages table. Other systems may insert into it with plain SQL, naming only
 * (channel, author, body): every other column has a default, and the checks keep what they write
 * deliverable.
 */
import { SqlClient } from "@effect/sql"
import { Effect } from "effect"

export default Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  // txid records the inserting transaction. Sequence values are taken before commit, so ids alone
  // do not say which rows are final; a row whose transaction is older than every running one is
  // (see MessageRepo.poll). (txid, id) is the delivery order.
  yield* sql`
    CREATE TABLE messages (
      id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
      txid xid8 NOT NULL DEFAULT pg_current_xact_id(),
      channel text NOT NULL DEFAULT 'general'
        CONSTRAINT messages_channel_format CHECK (channel ~ '^[A-Za-z0-9_.:-]{1,64}$'),
      author text NOT NULL DEFAULT 'anonymous'
        CONSTRAINT messages_author_length CHECK (char_length(author) BETWEEN 1 AND 64),
      body text NOT NULL CONSTRAINT messages_body_not_empty CHECK (body <> ''),
      created_at timestamptz NOT NULL DEFAULT now()
    )
  `
  yield* sql`CREATE UNIQUE INDEX messages_delivery_order ON messages (txid, id)`
  yield* sql`CREATE INDEX messages_channel_delivery_order ON messages (channel, txid, id)`
})
