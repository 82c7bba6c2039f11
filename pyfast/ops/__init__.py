"""pyfast.ops"""
