package management

// metricsRoutes registers /metrics.
func (m *Manager) metricsRoutes() {}
