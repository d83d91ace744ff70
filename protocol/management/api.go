package management

// apiRoutes registers /api/v1/.
func (m *Manager) apiRoutes() {}
