/**
 * Member roles: what a member of a cluster serves, carried (signed) in its membership
 * announcements. A member has the request, broadcast and tunnel roles when it joined with
 * the matching handler, and the storage role when its node has a data directory (it can
 * host stream replicas and the cluster's metadata group). On the wire the roles are one
 * byte of bit flags (`RoleBit`); bits this version does not know are ignored.
 */
import type { MemberRoles } from '../types.js'

/** Bit of each role in the announcement's roles byte. */
export const RoleBit = { request: 1, broadcast: 2, tunnel: 4, storage: 8 } as const

/** Every role bit this version knows. */
export const ALL_ROLE_BITS = 0x0f

/** The roles of a member whose announcement predates roles (version 1): assumed to serve everything. */
export const LEGACY_ROLES: Readonly<MemberRoles> = Object.freeze({
  request: true,
  broadcast: true,
  tunnel: true,
  storage: true,
})

/** The roles byte for `roles`. */
export function rolesToBits(roles: MemberRoles): number {
  return (
    (roles.request ? RoleBit.request : 0) |
    (roles.broadcast ? RoleBit.broadcast : 0) |
    (roles.tunnel ? RoleBit.tunnel : 0) |
    (roles.storage ? RoleBit.storage : 0)
  )
}

/** The roles a roles byte says (unknown bits ignored). */
export function rolesFromBits(bits: number): MemberRoles {
  return {
    request: (bits & RoleBit.request) !== 0,
    broadcast: (bits & RoleBit.broadcast) !== 0,
    tunnel: (bits & RoleBit.tunnel) !== 0,
    storage: (bits & RoleBit.storage) !== 0,
  }
}

/** A role a caller looks for in members. */
export type Role = keyof MemberRoles

/**
 * Why no member of `cluster` can be used for `role` although `total` members are known
 * (none has the role): the message of the `NoMembersError` (or `NotEnoughReplicasError`).
 */
export function noRoleMessage(cluster: string, role: Role, total: number): string {
  const n = `${total} member${total === 1 ? '' : 's'}`
  switch (role) {
    case 'request':
      return `no member of ${cluster} serves requests: ${n}, none with a request handler`
    case 'tunnel':
      return `no member of ${cluster} accepts tunnels: ${n}, none with a tunnel handler`
    case 'broadcast':
      return `no member of ${cluster} takes broadcasts: ${n}, none with a broadcast handler`
    case 'storage':
      return `no member of cluster ${cluster} has a data directory (${n}): stream replicas live only on members started with a dataDir`
  }
}
