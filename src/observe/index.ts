/**
 * The observation layer (docs/metrics.md), loaded by the node only when the `http` option is
 * on, so nodes without it do not load prom-client or the dashboard.
 */
export { createDashboard, type Dashboard } from './dashboard.js'
export { Health } from './health.js'
export { type HttpEndpoint, type HttpHandler, startHttp } from './http.js'
export { NodeMetrics } from './metrics.js'
export { type NodeParts, nodeHealthSource, nodeMetricsSource } from './source.js'
