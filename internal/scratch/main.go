package main

import (
	"database/sql"
	"fmt"
	"os"

	_ "github.com/go-sql-driver/mysql"
)

func main() {
	for _, dsn := range []string{"root@tcp(127.0.0.1:" + os.Args[1] + ")/test", "root@tcp(127.0.0.1:" + os.Args[1] + ")/test?interpolateParams=true"} {
		db, err := sql.Open("mysql", dsn)
		if err != nil {
			panic(err)
		}
		db.SetMaxOpenConns(1)
		must := func(_ sql.Result, err error) {
			if err != nil {
				fmt.Println("ERR", err)
			}
		}
		must(db.Exec("DROP TABLE IF EXISTS gq"))
		must(db.Exec("CREATE TABLE gq (i int not null, b bigint unsigned, f float, d double, dec1 decimal(10,2), s varchar(20), bl blob, dt datetime, da date, t time, ti tinyint) ENGINE=queue"))
		must(db.Exec("INSERT INTO gq VALUES (?,?,?,?,?,?,?,?,?,?,?)", 1, uint64(18446744073709551615), 1.5, 2.25, "3.14159", "héllo", []byte{0, 1, 2}, "2024-01-02 03:04:05", "2024-05-06", "-12:34:56", -5))
		must(db.Exec("INSERT INTO gq (i) VALUES (?)", 2))
		var idx sql.NullInt64
		if err := db.QueryRow("SELECT queue_wait(?, ?)", "gq", 1).Scan(&idx); err != nil {
			fmt.Println("ERR wait", err)
		}
		fmt.Println("wait", idx)
		rows, err := db.Query("SELECT * FROM gq WHERE i >= ?", 0)
		if err != nil {
			fmt.Println("ERR", err)
			continue
		}
		cols, _ := rows.ColumnTypes()
		for rows.Next() {
			vals := make([]any, len(cols))
			ptrs := make([]any, len(cols))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			if err := rows.Scan(ptrs...); err != nil {
				fmt.Println("scan", err)
			}
			for _, v := range vals {
				if b, ok := v.([]byte); ok {
					fmt.Printf("%q ", b)
				} else {
					fmt.Printf("%v(%T) ", v, v)
				}
			}
			fmt.Println()
		}
		rows.Close()
		var one int
		fmt.Println(db.QueryRow("SELECT queue_end()").Scan(&one), one)
		db.Close()
	}
}
