"""Specialty grocery storefront tools. Rules enforced here: stock never goes negative, delivery
dates lie 1 to 14 days after today, promo codes must be valid and meet their minimum, orders
change only along placed -> shipped -> delivered, cancelling restocks, refunds happen once and
only for shipped or delivered orders and go to store credit or the original payment."""
from datetime import date, timedelta

from envfactory.envs import ToolError

MAX_DELIVERY_DAYS = 14


def _product(row):
    return {k: row[k] for k in ("product_id", "name", "category", "unit_price", "stock")}


def search_products(ctx, query=None, category=None, in_stock_only=False, max_price=None, limit=10, offset=0):
    where, params = [], []
    if query:
        where.append("name LIKE ?")
        params.append(f"%{query}%")
    if category:
        where.append("category = ?")
        params.append(category)
    if in_stock_only:
        where.append("stock > 0")
    if max_price is not None:
        where.append("unit_price <= ?")
        params.append(max_price)
    clause = (" WHERE " + " AND ".join(where)) if where else ""
    total = ctx.scalar(f"SELECT COUNT(*) FROM products{clause}", params)
    rows = ctx.all(f"SELECT * FROM products{clause} ORDER BY name LIMIT ? OFFSET ?", [*params, limit, offset])
    return {"total": total, "products": [_product(r) for r in rows]}


def get_product(ctx, product_id):
    return _product(ctx.get("products", product_id, "product"))


def find_customer(ctx, email):
    row = ctx.one("SELECT * FROM customers WHERE lower(email) = lower(?)", (email.strip(),))
    if row is None:
        raise ToolError(f"no customer has the email {email!r}")
    return row


def list_customer_orders(ctx, customer_id, status=None, limit=20):
    ctx.get("customers", customer_id, "customer")
    sql = ("SELECT o.order_id, o.product_id, p.name AS product_name, o.quantity, o.total, o.placed_on, o.delivery_date, o.status "
           "FROM orders o JOIN products p USING (product_id) WHERE o.customer_id = ?")
    params = [customer_id]
    if status:
        sql += " AND o.status = ?"
        params.append(status)
    rows = ctx.all(sql + " ORDER BY o.placed_on DESC, o.order_id DESC LIMIT ?", [*params, limit])
    return {"customer_id": customer_id, "orders": rows}


def get_order(ctx, order_id):
    order = ctx.get("orders", order_id, "order")
    refund = ctx.one("SELECT refund_id, amount, reason, issued_on FROM refunds WHERE order_id = ?", (order_id,))
    return {**order, "refund": refund}


def _check_delivery(ctx, delivery_date):
    try:
        day = date.fromisoformat(delivery_date)
    except ValueError:
        raise ToolError(f"delivery date {delivery_date!r} is not a date (use YYYY-MM-DD)") from None
    today = date.fromisoformat(ctx.today())
    if not today < day <= today + timedelta(days=MAX_DELIVERY_DAYS):
        raise ToolError(f"delivery date {delivery_date} must be after {today} and at most {MAX_DELIVERY_DAYS} days ahead")
    return day.isoformat()


def place_order(ctx, customer_id, product_id, quantity, delivery_date, promo_code=None):
    ctx.get("customers", customer_id, "customer")
    product = ctx.get("products", product_id, "product")
    if product["stock"] < quantity:
        raise ToolError(f"only {product['stock']} of product {product_id} ({product['name']}) in stock, {quantity} requested")
    day = _check_delivery(ctx, delivery_date)
    total = round(product["unit_price"] * quantity, 2)
    if promo_code:
        promo = ctx.one("SELECT * FROM promo_codes WHERE code = ?", (promo_code.strip().upper(),))
        if promo is None:
            raise ToolError(f"promo code {promo_code!r} does not exist")
        if promo["expires_on"] < ctx.today():
            raise ToolError(f"promo code {promo['code']} expired on {promo['expires_on']}")
        if total < promo["min_total"]:
            raise ToolError(f"promo code {promo['code']} needs an order of at least {promo['min_total']:.2f}; this one is {total:.2f}")
        total = round(total * (100 - promo["percent_off"]) / 100, 2)
        promo_code = promo["code"]
    order_id = ctx.insert("orders", {"customer_id": customer_id, "product_id": product_id, "quantity": quantity,
                                     "unit_price": product["unit_price"], "promo_code": promo_code, "total": total,
                                     "placed_on": ctx.today(), "delivery_date": day, "status": "placed"})
    ctx.execute("UPDATE products SET stock = stock - ? WHERE product_id = ?", (quantity, product_id))
    return get_order(ctx, order_id)


def change_delivery_date(ctx, order_id, delivery_date):
    order = ctx.get("orders", order_id, "order")
    if order["status"] != "placed":
        raise ToolError(f"order {order_id} is {order['status']}; only placed orders can change their delivery date")
    new_date = _check_delivery(ctx, delivery_date)
    if new_date == order["delivery_date"]:
        raise ToolError(f"order {order_id} is already due for delivery on {new_date}; nothing to change")
    ctx.update("orders", order_id, {"delivery_date": new_date})
    return get_order(ctx, order_id)


def cancel_order(ctx, order_id):
    order = ctx.get("orders", order_id, "order")
    if order["status"] != "placed":
        raise ToolError(f"order {order_id} is {order['status']} and can no longer be cancelled")
    ctx.update("orders", order_id, {"status": "cancelled"})
    ctx.execute("UPDATE products SET stock = stock + ? WHERE product_id = ?", (order["quantity"], order["product_id"]))
    return get_order(ctx, order_id)


def ship_order(ctx, order_id):
    order = ctx.get("orders", order_id, "order")
    if order["status"] != "placed":
        raise ToolError(f"order {order_id} is {order['status']}; only placed orders can be shipped")
    ctx.update("orders", order_id, {"status": "shipped"})
    return get_order(ctx, order_id)


def refund_order(ctx, order_id, reason, to_store_credit=False):
    order = ctx.get("orders", order_id, "order")
    if order["status"] not in ("shipped", "delivered"):
        raise ToolError(f"order {order_id} is {order['status']}; only shipped or delivered orders can be refunded")
    if not reason.strip():
        raise ToolError("a refund needs a reason")
    ctx.insert("refunds", {"order_id": order_id, "amount": order["total"], "reason": reason.strip(), "issued_on": ctx.today()})
    ctx.update("orders", order_id, {"status": "refunded"})
    if to_store_credit:
        ctx.execute("UPDATE customers SET store_credit = round(store_credit + ?, 2) WHERE customer_id = ?",
                    (order["total"], order["customer_id"]))
    return get_order(ctx, order_id)
