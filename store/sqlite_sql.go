package store

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
)

// rowConn runs the writer's statements on its connection: kline rows (dbRow, bound
// in rowColumns' order) and statements of integer arguments. Its methods run only
// inside the writer connection's sql.Conn.Raw, on the writer goroutine; close
// finalizes what it prepared, before the connection closes.
type rowConn interface {
	// insert runs q once per row and returns the rows changed.
	insert(q string, rows []dbRow, text []byte) (int64, error)
	// exec runs q with integer arguments and returns the rows changed.
	exec(q string, args ...int64) (int64, error)
	close() error
}

// driverRowConn is the rowConn of any database/sql driver: statements prepared on the
// driver connection, values bound without database/sql's conversions.
type driverRowConn struct {
	conn  driver.ConnPrepareContext
	stmts map[string]driver.StmtExecContext
	args  []driver.NamedValue
}

func newDriverRowConn(dc any) (rowConn, error) {
	pc, ok := dc.(driver.ConnPrepareContext)
	if !ok {
		return nil, errors.New("cannot write klines: the driver lacks ConnPrepareContext")
	}
	return &driverRowConn{conn: pc, stmts: map[string]driver.StmtExecContext{}}, nil
}

func (c *driverRowConn) prepare(q string) (driver.StmtExecContext, error) {
	if st := c.stmts[q]; st != nil {
		return st, nil
	}
	st, err := c.conn.PrepareContext(context.Background(), q)
	if err != nil {
		return nil, fmt.Errorf("cannot prepare statement: %w", err)
	}
	ex, ok := st.(driver.StmtExecContext)
	if !ok {
		st.Close()
		return nil, errors.New("cannot execute statement: the driver lacks StmtExecContext")
	}
	c.stmts[q] = ex
	return ex, nil
}

func (c *driverRowConn) run(q string) (int64, error) {
	st, err := c.prepare(q)
	if err != nil {
		return 0, err
	}
	res, err := st.ExecContext(context.Background(), c.args)
	if err != nil {
		return 0, err
	}
	n, _ := res.RowsAffected()
	return n, nil
}

func (c *driverRowConn) insert(q string, rows []dbRow, text []byte) (int64, error) {
	var changes int64
	for i := range rows {
		r := &rows[i]
		c.args = c.args[:0]
		for j := range rowParams {
			var v driver.Value = r[j]
			if j >= slotOpen && j < slotOpen+numDecimals && r[slotText]&(1<<(j-slotOpen)) != 0 {
				s, err := textOf(r, j, text)
				if err != nil {
					return changes, err
				}
				v = string(s)
			}
			c.args = append(c.args, driver.NamedValue{Ordinal: j + 1, Value: v})
		}
		n, err := c.run(q)
		if err != nil {
			return changes, err
		}
		changes += n
	}
	return changes, nil
}

func (c *driverRowConn) exec(q string, args ...int64) (int64, error) {
	c.args = c.args[:0]
	for i, a := range args {
		c.args = append(c.args, driver.NamedValue{Ordinal: i + 1, Value: a})
	}
	return c.run(q)
}

func (c *driverRowConn) close() error {
	var err error
	for q, st := range c.stmts {
		if cl, ok := st.(driver.Stmt); ok {
			err = errors.Join(err, cl.Close())
		}
		delete(c.stmts, q)
	}
	return err
}

// scanRowsSQL is scanRows through database/sql: each value scanned, then placed in
// its slot.
func scanRowsSQL(ctx context.Context, conn *sql.Conn, q string, args []int64, f func(rows []dbRow, text []byte) error) error {
	anyArgs := make([]any, len(args))
	for i, a := range args {
		anyArgs[i] = a
	}
	rs, err := conn.QueryContext(ctx, q, anyArgs...)
	if err != nil {
		return err
	}
	defer rs.Close()
	vals := make([]any, rowParams)
	ptrs := make([]any, rowParams)
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	rows := make([]dbRow, 1)
	var text []byte
	for rs.Next() {
		if err := rs.Scan(ptrs...); err != nil {
			return err
		}
		r := &rows[0]
		text = text[:0]
		r[slotText] = 0
		for i, v := range vals {
			var s []byte
			switch v := v.(type) {
			case int64:
				r[i] = v
				continue
			case string: // TEXT (a BLOB scans as []byte: refused, as by the C path)
				s = []byte(v)
			}
			if s == nil || i < slotOpen || i >= slotOpen+numDecimals || len(s) > maxDecimalText {
				return fmt.Errorf("cannot decode kline row: column %d holds %T, neither an integer nor a decimal text: %w", i, v, errDecimal)
			}
			start := len(text)
			text = append(text, s...)
			r[i] = textRef(start, len(text))
			r[slotText] |= 1 << (i - slotOpen)
		}
		if err := f(rows, text); err != nil {
			return err
		}
	}
	return rs.Err()
}
