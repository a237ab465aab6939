/**
 * Error classes crossing the wire by name (rpc, relay) and as the CLI prints them.
 */
import { describe, expect, it } from 'vitest'
import { exitCodeFor, formatError } from '../../src/cli/output.js'
import { errorFromWire, errorName, LeadershipLostError, PlexusError } from '../../src/errors.js'
import * as plexus from '../../src/index.js'
import { LeadershipLostError as ReplicationLeadershipLost } from '../../src/replication/index.js'

describe('LeadershipLostError', () => {
  it('is public, crosses the wire by name, and the CLI exits 1 with its name', () => {
    expect(plexus.LeadershipLostError).toBe(LeadershipLostError)
    expect(ReplicationLeadershipLost).toBe(LeadershipLostError) // the one the raft driver throws
    const err = new LeadershipLostError('n1 lost leadership; the outcome is unknown')
    expect(err).toBeInstanceOf(PlexusError)
    expect(err.name).toBe('LeadershipLostError')
    expect(errorName(err)).toBe('LeadershipLostError')
    const back = errorFromWire(errorName(err), err.message)
    expect(back).toBeInstanceOf(LeadershipLostError)
    expect(back.message).toBe(err.message)
    expect(exitCodeFor(back)).toBe(1)
    expect(formatError(back)).toBe('plexus: LeadershipLostError: n1 lost leadership; the outcome is unknown')
  })
})
