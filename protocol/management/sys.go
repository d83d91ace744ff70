package management

// startSys starts the $SYS publisher.
func (m *Manager) startSys() {}
