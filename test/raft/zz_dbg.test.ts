import { it } from 'vitest'
import { Sim } from './sim.js'
import { runSchedule } from './schedules.js'
it('dbg', () => {
  const orig = Sim.prototype.round
  Sim.prototype.round = function (this: Sim) {
    orig.call(this)
    if (this.now > 340) console.log(this.now, JSON.stringify(this.groups ? [...this.groups] : null), JSON.stringify(this.leader()?.node().status().progress), this.order.map((id) => { const n = this.n(id); if (!n.rn) return `${id}:down`; const r = n.rn.raft; return `${id}:${r.role[0]}${r.term}/${r.leader}/c${r.log.committed}/l${r.log.lastIndex()}` }).join(' '))
  }
  runSchedule(1200, 3, 300)
})
