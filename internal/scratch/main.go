package main

import (
	"fmt"

	"github.com/pingcap/tidb/pkg/parser"
	"github.com/pingcap/tidb/pkg/parser/ast"
	_ "github.com/pingcap/tidb/pkg/parser/test_driver"
)

func main() {
	p := parser.New()
	for _, q := range []string{"select @@version_comment limit 1", "SELECT queue_wait( 'my_queue' ), 1+2 AS x, `v1` FROM t", "selec 1", "SELECT * FROM t WHERE queue_wait('t')", "insert into t values (x'41', 0x42, b'1', 1.5, 1e3, -3)", "DESC t", "SHOW COLUMNS FROM t LIKE 'v%'", "SELECT CURRENT_TIMESTAMP, NOW()", "set session wait_timeout=10, @x=1", "KILL QUERY 5", "SHOW ENGINE QUEUE STATUS", "create table t (id int primary key auto_increment, b blob, c text, d mediumtext, e longblob, f char(3) binary, g varbinary(3), k tinytext, j json, key(id)) engine=queue"} {
		stmts, _, err := p.Parse(q, "", "")
		if err != nil {
			fmt.Printf("ERR %T %v\n", err, err)
			continue
		}
		for _, s := range stmts {
			fmt.Printf("%T %q\n", s, s.Text())
			if sel, ok := s.(*ast.SelectStmt); ok {
				for _, f := range sel.Fields.Fields {
					if f.Expr != nil {
						fmt.Printf("  field text=%q exprtext=%q as=%q %T\n", f.Text(), f.Expr.Text(), f.AsName.O, f.Expr)
					}
				}
			}
			if ins, ok := s.(*ast.InsertStmt); ok {
				for _, e := range ins.Lists[0] {
					fmt.Printf("  %T %#v\n", e, e)
				}
			}
			if ct, ok := s.(*ast.CreateTableStmt); ok {
				for _, c := range ct.Cols {
					fmt.Printf("  %s tp=%d flen=%d flag=%d cs=%q %q\n", c.Name.Name.O, c.Tp.GetType(), c.Tp.GetFlen(), c.Tp.GetFlag(), c.Tp.GetCharset(), c.Tp.CompactStr())
				}
				fmt.Println(len(ct.Constraints))
			}
		}
	}
}
