/**
 * Wake-ups that cost the database's other writers nothing. The statement trigger of 00003 made
 * every transaction that inserts into messages one that has sent a notification, and PostgreSQL
 * serialises the commits of those behind one instance-wide lock, held until each commit is
 * flushed: 8 connections of single-row INSERTs went from 7,566 to 3,344 a second. Nodes are now
 * woken by pollcast's own writes, announced after they commit, and by a probe (see Wakeups).
 *
 * The trigger's function stays, for writers who choose to wake nodes from their own transactions
 * and pay that cost (see the README's Wake-up section).
 */
import { SqlClient } from "@effect/sql"
import { Effect } from "effect"

export default Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  yield* sql`DROP TRIGGER IF EXISTS messages_notify_wakeup ON messages`
})
