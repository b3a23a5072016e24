package index

// SetKillPoint makes Build call f at its named points; a test that exits
// there simulates a killed index run.
func SetKillPoint(f func(string)) { killPoint = f }
