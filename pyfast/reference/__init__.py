"""pyfast.reference"""
