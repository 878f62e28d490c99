package integration

import (
	"testing"
)

// Aggregates, grouping, order and limits over the information_schema
// tables that describe both sides count both, as one mysqld would: the
// upstream's rows and q4mproxy's, evaluated by q4mproxy.
func TestUpstreamCatalogAggregates(t *testing.T) {
	s := startUpstreamServer(t)
	for _, m := range driverModes {
		t.Run(m.name, func(t *testing.T) {
			g := newGConn(t, s, m)
			db := uniqueName(t, "cat")
			g.exec("CREATE DATABASE " + db)
			t.Cleanup(func() { openMariaDB(t, "root", "", "").Exec("DROP DATABASE IF EXISTS " + db) })
			g.exec("CREATE TABLE " + db + ".a (id INT PRIMARY KEY, v INT) ENGINE=InnoDB")
			g.exec("CREATE TABLE " + db + ".c (id INT) ENGINE=InnoDB")
			g.exec("CREATE TABLE " + db + ".b (x INT, y VARCHAR(10), z INT) ENGINE=queue")
			g.exec("INSERT INTO " + db + ".b VALUES (1, 'one', 1)")

			g.wantValue("3", "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = '"+db+"'")
			g.wantValue("3", "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = ?", db)
			g.wantValue("6", "SELECT COUNT(*) FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ?", db)
			g.wantRows("SELECT ENGINE, COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = '"+db+"' GROUP BY ENGINE", nil,
				[]string{"InnoDB", "2"}, []string{"QUEUE", "1"})
			g.wantRows("SELECT TABLE_NAME, ENGINE FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? ORDER BY TABLE_NAME", []any{db},
				[]string{"a", "InnoDB"}, []string{"b", "QUEUE"}, []string{"c", "InnoDB"})
			g.wantRows("SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? ORDER BY TABLE_NAME DESC LIMIT 2", []any{db},
				[]string{"c"}, []string{"b"})
			g.wantValue("2", "SELECT COUNT(*) FROM information_schema.ENGINES WHERE ENGINE IN ('InnoDB', 'QUEUE')")
			g.wantValue("1", "SELECT COUNT(*) FROM information_schema.PLUGINS WHERE PLUGIN_NAME = 'QUEUE'")

			// What q4mproxy cannot evaluate is refused, clearly; the
			// connection goes on.
			_, err := g.rowsErr("SELECT DISTINCT ENGINE FROM information_schema.TABLES WHERE TABLE_SCHEMA = ?", db)
			wantMySQLError(t, err, 1235, "42000", "This version of q4mproxy doesn't yet support this SELECT of information_schema.TABLES in front of an upstream server", true)
			g.wantValue("3", "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = '"+db+"'")
		})
	}
}
