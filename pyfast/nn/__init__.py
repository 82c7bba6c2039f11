"""pyfast.nn"""
