package management

// consoleRoutes registers /console/.
func (m *Manager) consoleRoutes() {}
