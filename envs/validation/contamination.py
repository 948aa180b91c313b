"""A guard against training environments that mirror public evaluation benchmarks.

Tools named like those of tau2-bench's domains or BFCL's multi-turn classes would teach a model the
very calls it is later scored on (the reference release reused several). The names below are the
benchmarks' public tool names; an environment that shares them is flagged by the quality bar and
refused by EnvGen unless explicitly allowed. A shared common verb (``place_order``) is not a mirror;
a distinctive name, or several common names from one benchmark domain, are.
"""
from __future__ import annotations

_TAU2 = {
    "airline": "book_reservation cancel_reservation get_reservation_details get_user_details list_all_airports "
               "search_direct_flight search_onestop_flight send_certificate update_reservation_baggages "
               "update_reservation_flights update_reservation_passengers get_flight_status",
    "retail": "cancel_pending_order exchange_delivered_order_items find_user_id_by_email find_user_id_by_name_zip "
              "get_order_details get_product_details list_all_product_types modify_pending_order_address "
              "modify_pending_order_items modify_pending_order_payment modify_user_address return_delivered_order_items",
    "telecom": "get_customer_by_phone get_customer_by_id get_customer_by_name get_details_by_id suspend_line "
               "resume_line get_bills_for_customer send_payment_request get_data_usage enable_roaming "
               "disable_roaming refuel_data toggle_roaming",
}
_BFCL = {
    "GorillaFileSystem": "ls cd mkdir touch echo cat grep mv cp rm rmdir wc sort tail head du find diff pwd",
    "MessageAPI": "send_message delete_message view_messages_sent view_messages_received add_contact "
                  "search_messages get_message_stats message_login list_users get_user_id",
    "TwitterAPI": "authenticate_twitter post_tweet retweet comment mention follow_user list_all_following "
                  "unfollow_user get_tweet get_user_tweets search_tweets get_tweet_comments get_user_stats",
    "TicketAPI": "create_ticket get_ticket close_ticket resolve_ticket edit_ticket ticket_login "
                 "ticket_get_login_status get_user_tickets",
    "TradingBot": "get_stock_info place_order cancel_order get_account_info trading_login trading_logout "
                  "fund_account add_to_watchlist remove_stock_from_watchlist get_watchlist get_order_history "
                  "get_transaction_history update_stock_price get_available_stocks filter_stocks_by_price",
    "TravelAPI": "book_flight get_flight_cost cancel_booking authenticate_travel get_credit_card_balance "
                 "register_credit_card verify_traveler_information purchase_insurance retrieve_invoice "
                 "contact_customer_support get_nearest_airport_by_city compute_exchange_rate set_budget_limit "
                 "get_all_credit_cards get_budget_fiscal_year",
    "VehicleControlAPI": "startEngine lockDoors adjustClimateControl setHeadlights displayCarStatus fillFuelTank "
                         "check_tire_pressure find_nearest_tire_shop activateParkingBrake pressBrakePedal "
                         "releaseBrakePedal setCruiseControl estimate_drive_feasibility_by_mileage",
}

BENCHMARK_TOOLS: dict[str, str] = {
    **{name: f"tau2-bench {domain}" for domain, names in _TAU2.items() for name in names.split()},
    **{name: f"BFCL multi-turn {cls}" for cls, names in _BFCL.items() for name in names.split()},
}


def distinctive(name: str) -> bool:
    """A name specific enough to point at its benchmark on its own (three words or more, or camelCase)."""
    return name.count("_") >= 2 or (name != name.lower() and "_" not in name)


def benchmark_overlap(tool_names, min_generic: int = 3) -> dict[str, str]:
    """Tool name -> the benchmark that uses it, for names that point at a benchmark: a distinctive
    name (``modify_pending_order_items``), or ``min_generic`` or more common names from the same
    benchmark domain or class (a mirrored tool set, not one ordinary verb like ``cancel_order``)."""
    shared = {n: BENCHMARK_TOOLS[n] for n in sorted(set(tool_names)) if n in BENCHMARK_TOOLS}
    generic: dict[str, int] = {}
    for name, source in shared.items():
        if not distinctive(name):
            generic[source] = generic.get(source, 0) + 1
    return {n: s for n, s in shared.items() if distinctive(n) or generic.get(s, 0) >= min_generic}


def describe_overlap(overlap: dict[str, str]) -> str:
    by_source: dict[str, list[str]] = {}
    for name, source in overlap.items():
        by_source.setdefault(source, []).append(name)
    return "; ".join(f"{source}: {', '.join(names)}" for source, names in sorted(by_source.items()))
